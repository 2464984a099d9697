"""Score terms summed onto the learned score (excluded-volume wall, harmonic bonds, pair and angle
tables): each one fits, serialises and binds itself.
"""
