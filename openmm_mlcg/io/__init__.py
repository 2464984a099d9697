"""Files in, one clear error out: readers, DCD headers and frame counts, the frame interval of a file.
"""
