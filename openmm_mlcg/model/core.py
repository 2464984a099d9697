"""``CGDynamicsModel``: the one model object shared by the trainer and the runtime.

In the style of DeepMind's GNS ``LearnedSimulator`` (Sanchez-Gonzalez et al., ICML 2020): one
``torch.nn.Module`` owns the typed metadata record (:class:`~openmm_mlcg.model.ModelMetadata`), the
normalisation statistics (buffers), the three GNNs and every model-step convention:

* feature normalisation: history velocities / ``velocity_std`` (computed in the input dtype, then float32);
  accelerations / ``acceleration_std``; ``velocity_std`` is also the Score GNN's displacement scale;
* the cutoff (``metadata.cutoff_nm``) is passed to the GNNs by the model only, for TorchScript and
  torch.export bundles alike (the exported programs check it against the value baked in at export);
* history layout: the public runtime layout is ``(k, n, 3)`` (oldest first); the GNN layout is node-major
  ``(n, k, 3)`` (:meth:`node_major`), which is also the layout of training batches;
* edges = CG bonds union radius edges, a CG bond wins over a radius edge (:func:`openmm_mlcg.nn.build_edges`);
* the Gaussian mean acceleration is ``-v_last`` plus the network's residual, so the mean next position is
  ``x + residual * acceleration_std`` (:func:`openmm_mlcg.model.dynamics.gaussian_mean`).

``loss`` (trainer) and ``step`` (runtime) both go through :meth:`predict`, so the runtime's one-step
prediction on a training window is the trainer's prediction bit for bit. The bundle file stores the three
GNNs (TorchScript or torch.export) and ``metadata.to_dict()``; :func:`openmm_mlcg.bundle.load_model` rebuilds the model around
them. The runtime (this module) never imports :mod:`openmm_mlcg.train`.
"""
from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..generators import StepInputs
from ..generators.interpolant import model_denoiser
from ..generators.score_samplers import model_gns
from ..nn.dkmp import LayeredEdges
from ..nn.neighbors import build_edges
from ..nn.skin import SkinNeighborList, default_skin_nm
from ..priors.bonds import HarmonicBonds, bond_parameters
from .dynamics import gaussian_mean
from .graph import SystemGraph, system_graph
from .metadata import ModelMetadata
from .objective import LossOptions, training_loss

__all__ = ["CGDynamicsModel", "Prediction", "LossOptions"]

Edges = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Prediction(NamedTuple):
    """The Dynamics GNN's Gaussian for one model step.

    Attributes:
        mean, std: (n, 3) mean and std of the acceleration, units of ``acceleration_std`` (float32).
        mean_pos, std_pos: (n, 3) the same Gaussian over the next positions, nm (dtype of the positions).
        latent: (n, hidden) Dynamics GNN node latents (input of the Score GNN).
    """

    mean: torch.Tensor
    std: torch.Tensor
    mean_pos: torch.Tensor
    std_pos: torch.Tensor
    latent: torch.Tensor


class CGDynamicsModel(nn.Module):
    """Embedding, Dynamics and Score GNNs with their metadata and normalisation statistics.

    Args:
        embedding, dynamics, score: EmbeddingGNN, DynamicsGNN, ScoreGNN (eager, TorchScript or loaded
            torch.export programs).
        metadata: :class:`ModelMetadata` or a metadata mapping (validated with ``ModelMetadata.from_dict``).

    Buffers:
        velocity_std (nm per model step), acceleration_std (nm per model step^2), sigmas_nm (L,) nm; float64.

    Raises:
        ValueError: invalid metadata, or the Dynamics GNN's history differs from ``metadata.history``.
    """

    def __init__(self, embedding, dynamics, score, metadata: Union[ModelMetadata, Mapping]):
        super().__init__()
        if not isinstance(metadata, ModelMetadata):
            metadata = ModelMetadata.from_dict(metadata)
        k_module = getattr(dynamics, "history", None)
        if isinstance(k_module, int) and k_module != metadata.history:
            raise ValueError(f"metadata: history is {metadata.history} but the Dynamics GNN takes {k_module} "
                             "history velocities (inconsistent bundle)")
        self.embedding, self.dynamics, self.score = embedding, dynamics, score
        self.metadata = metadata
        f64 = dict(dtype=torch.float64)
        self.register_buffer("velocity_std", torch.tensor(float(metadata.velocity_std), **f64))
        self.register_buffer("acceleration_std", torch.tensor(float(metadata.acceleration_std), **f64))
        self.register_buffer("sigmas_nm", torch.tensor([float(s) for s in metadata.sigmas_nm], **f64))

    @classmethod
    def from_bundle(cls, bundle, device=None) -> "CGDynamicsModel":
        """The model of a loaded :class:`openmm_mlcg.bundle.export.Bundle` (eval mode, on ``device`` if given).

        Raises:
            ValueError: the bundle's metadata is invalid or inconsistent (see :meth:`ModelMetadata.from_dict`).
        """
        meta = bundle.metadata   # load_bundle validated it once; a plain mapping (a bundle built in memory) is checked
        model = cls(bundle.embedding, bundle.dynamics, bundle.score,
                    meta if isinstance(meta, ModelMetadata) else ModelMetadata.from_dict(meta))
        return (model if device is None else model.to(device)).eval()

    # ------------------------------------------------------------------ conventions
    @property
    def cutoff_nm(self) -> float:
        """Radius cutoff of the CG graph, nm."""
        return float(self.metadata.cutoff_nm)

    @property
    def history_length(self) -> int:
        """k, number of history velocities."""
        return int(self.metadata.history)

    @staticmethod
    def node_major(history: torch.Tensor) -> torch.Tensor:
        """(k, n, 3) runtime history -> (n, k, 3) GNN/batch layout (and back: the same transpose)."""
        return history.transpose(0, 1)

    def normalise_velocities(self, velocities: torch.Tensor) -> torch.Tensor:
        """Velocities (nm per model step, any layout) / ``velocity_std``, computed in their dtype -> float32."""
        return (velocities / self.velocity_std.to(velocities.dtype)).to(torch.float32)

    def normalise_acceleration(self, acceleration: torch.Tensor) -> torch.Tensor:
        """Accelerations (nm per model step^2) / ``acceleration_std`` -> float32."""
        return (acceleration / self.acceleration_std.to(acceleration.dtype)).to(torch.float32)

    def system_graph(self, mapping, device=None) -> SystemGraph:
        """Static inputs of ``mapping`` with this model's vocabulary (ValueError naming unknown atom types), with
        the harmonic-bond parameters of the metadata's ``bond_prior`` score term (``cg_bond_prior``; None without)."""
        g = system_graph(mapping, self.metadata.atom_type_vocabulary, self.metadata.n_bond_types)
        bonds = self.metadata.score_terms.get("bond_prior")
        if bonds:
            transfer = self.metadata.bead_type_transfer(mapping.bead_types, g)
            if transfer is not None:
                bonds = HarmonicBonds.transferred(bonds, mapping.bead_types, transfer)
            g.cg_bond_prior = bond_parameters(mapping.bead_types, g.cg_bonds, bonds)
        return g if device is None else g.to(device)

    def embed(self, graph: SystemGraph) -> torch.Tensor:
        """Bead embeddings (n_beads, D) of a system from the Embedding GNN on its fine graph."""
        return self.embedding(graph.atom_types, graph.masses, graph.bond_index, graph.bond_types,
                              graph.atom_to_bead, graph.n_beads)

    #: skin (nm) of the neighbour list reused across the Score passes of one model step
    #: (:class:`openmm_mlcg.nn.skin.SkinNeighborList`): None = the rule :func:`openmm_mlcg.nn.skin.default_skin_nm`
    #: of the metadata; 0 = a full search at every pass (the same edges, slower). Set per instance.
    neighbor_skin_nm: Optional[float] = None

    def edges(self, positions: torch.Tensor, box: Optional[torch.Tensor], cg_bonds: torch.Tensor,
              batch: Optional[torch.Tensor] = None, boxes: Optional[torch.Tensor] = None,
              validate: bool = True) -> Edges:
        """CG graph on ``positions`` (n, 3) nm: CG bonds union radius edges at ``cutoff_nm`` (bond wins).

        ``validate=False`` skips the box check (the caller validated it once); see :func:`build_edges`. For the
        many passes of one model step :meth:`neighbor_list` gives the same edges faster.
        """
        return self._layered(build_edges(positions, box, self.cutoff_nm, cg_bonds, batch=batch, boxes=boxes,
                                         validate=validate))

    def _layered(self, edges: Edges) -> Edges:
        """``edges`` as they are (radius graph) or, for ``metadata.neighborhood == "dkmp"``, with the GNNs' DKMP*
        per-layer message sets attached (:class:`openmm_mlcg.nn.dkmp.LayeredEdges`, still a 3-tuple)."""
        m = self.metadata
        return edges if m.neighborhood == "radius" else LayeredEdges(edges, m.dkmp_shells_nm, m.dkmp_k)

    @staticmethod
    def _layers(edges: Edges, name: str):
        """The per-layer message sets of GNN ``name`` carried by ``edges``, or None (radius graph)."""
        return edges.layers(name) if isinstance(edges, LayeredEdges) else None

    def neighbor_list(self, box: Optional[torch.Tensor], cg_bonds: torch.Tensor) -> Optional[SkinNeighborList]:
        """A skin neighbour list for the graph passes of one model step, or None (search at every pass).

        Called on positions (n, 3) nm it returns what :meth:`edges` returns on them (``validate=False``), bit for
        bit, searching again only when beads have moved far enough (:mod:`openmm_mlcg.nn.skin`).

        Args:
            box: (3, 3) nm validated reduced box or None. cg_bonds: (2, m) long.

        Returns:
            :class:`~openmm_mlcg.nn.skin.SkinNeighborList` at cutoff ``cutoff_nm`` and skin
            :attr:`neighbor_skin_nm` (None: :func:`~openmm_mlcg.nn.skin.default_skin_nm` of the metadata's cutoff and
            ``velocity_std``); None when the skin is 0. For a DKMP* model (``metadata.neighborhood == "dkmp"``) a
            callable that adds the per-layer message sets to that list's edges, as :meth:`edges` does.
        """
        skin = self.neighbor_skin_nm
        if skin is None:
            skin = default_skin_nm(self.cutoff_nm, float(self.metadata.velocity_std))
        if not skin > 0:
            return None
        skin_list = SkinNeighborList(self.cutoff_nm, float(skin), box, cg_bonds)
        if self.metadata.neighborhood == "radius":
            return skin_list
        layered = lambda x: self._layered(skin_list(x))   # noqa: E731 - DKMP* layers on the skin list's edges
        layered.skin_list = skin_list
        return layered

    # ------------------------------------------------------------------ the Gaussian
    def predict(self, positions: torch.Tensor, history: torch.Tensor, bead_embedding: torch.Tensor,
                bead_masses: torch.Tensor, edges: Edges) -> Prediction:
        """The Dynamics GNN's Gaussian over the next step.

        Args:
            positions: (n, 3) current positions x_t, nm (the dtype of the position outputs).
            history: (n, k, 3) history velocities, node-major, oldest first, nm per model step.
            bead_embedding: (n, D) from :meth:`embed`. bead_masses: (n,) amu.
            edges: (edge_index, edge_vec nm, edge_type) from :meth:`edges` on ``positions``.

        Returns:
            :class:`Prediction`.
        """
        edge_index, edge_vec, edge_type = edges
        args = (bead_embedding, bead_masses, self.normalise_velocities(history), edge_index,
                edge_vec.to(torch.float32), edge_type, self.cutoff_nm)
        layers = self._layers(edges, "dynamics")
        residual, std, latent = self.dynamics(*args) if layers is None else self.dynamics(*args, layers)
        astd = self.acceleration_std
        mean = gaussian_mean(residual, history[:, -1], astd.to(residual.dtype))
        dtype = positions.dtype
        return Prediction(mean, std, positions + residual.to(dtype) * astd.to(dtype), std.to(dtype) * astd.to(dtype),
                          latent)

    @staticmethod
    def sample(prediction: Prediction, generator: Optional[torch.Generator] = None,
               deterministic: bool = False) -> torch.Tensor:
        """Independent per-bead Gaussian draw of the next positions (n, 3) nm; the mean when deterministic."""
        mean, std = prediction.mean_pos, prediction.std_pos
        if deterministic:
            return mean
        return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)

    # ------------------------------------------------------------------ refinement
    @property
    def refines(self) -> bool:
        """Whether the Score GNN was trained and the bundle's sampler does any work."""
        return self.metadata.refines

    @property
    def score_passes(self) -> int:
        """Score GNN passes of one refined model step (the Dynamics GNN adds one more where the generator uses it)."""
        return self.metadata.generator.score_passes(self.metadata) if self.refines else 0

    def gnn_passes_per_step(self, refine: bool = True) -> int:
        """GNN passes of one model step: the Dynamics pass (unless the refinement skips it) + the Score passes."""
        refined = refine and self.refines
        return int(not refined or self.uses_dynamics_in_refinement) + (self.score_passes if refined else 0)

    @property
    def uses_dynamics_in_refinement(self) -> bool:
        """Whether the generator's refined step needs the Dynamics GNN (False for ``"cg_langevin"`` unless its
        "jump and relax" long step is on, ``cg_langevin_relax_ps``)."""
        return self.metadata.generator.needs_dynamics(self.metadata)

    def equilibrium_gns(self, bead_embedding: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor,
                        edges: Edges) -> torch.Tensor:
        """sigma x the learned equilibrium score at ``noisy`` (n, 3) nm, ``sigma`` (n, 1) nm (``"cg_langevin"``).

        The Score GNN sees the bead embeddings (n, D), the graph on ``noisy`` and the noise level only (no
        residual, no displacement): a function of the configuration, the score of the smoothed equilibrium
        density p_sigma. Returns (n, 3), dimensionless (the score is this over sigma, 1/nm).
        """
        edge_index, edge_vec, edge_type = edges
        dtype = bead_embedding.dtype
        zero = torch.zeros(noisy.shape, dtype=dtype, device=noisy.device)
        args = (bead_embedding, zero, zero, edge_index, edge_vec.to(dtype), edge_type, sigma.to(dtype),
                self.cutoff_nm, float(self.metadata.velocity_std))
        layers = self._layers(edges, "score")
        out = self.score(*args) if layers is None else self.score(*args, layers)
        return out.to(noisy.dtype)

    def gns(self, prediction: Prediction, anchor: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor,
            edges: Edges) -> torch.Tensor:
        """Model GNS (Gaussian prior GNS + Score GNN residual) at ``noisy`` (n, 3) nm, ``sigma`` (n, 1) nm."""
        edge_index, edge_vec, edge_type = edges
        return model_gns(self.score, prediction.latent, noisy, anchor, prediction.mean_pos, prediction.std_pos,
                              sigma, edge_index, edge_vec, edge_type, self.cutoff_nm, float(self.metadata.velocity_std))

    def denoise(self, prediction: Prediction, anchor: torch.Tensor, xs: torch.Tensor, s: torch.Tensor,
                edges: Edges) -> Tuple[torch.Tensor, torch.Tensor]:
        """Model denoiser E[x_{t+1} | x_s] of the interpolant sampler at ``xs`` (n, 3) nm, ``s`` (n, 1)
        (:func:`openmm_mlcg.generators.interpolant.model_denoiser`; the network's noise floor is the last ``sigmas_nm``).

        Returns:
            (D (n, 3) nm, posterior std (n, 3) nm); trainer (:meth:`loss`) and runtime (:meth:`refine`) alike.
        """
        edge_index, edge_vec, edge_type = edges
        return model_denoiser(self.score, prediction.latent, xs, s, anchor, prediction.mean_pos,
                                   prediction.std_pos, self.metadata.interpolant_a_nm, edge_index, edge_vec,
                                   edge_type, self.cutoff_nm, float(self.metadata.velocity_std),
                                   float(self.metadata.sigmas_nm[-1]))

    def refine(self, positions: torch.Tensor, prediction: Optional[Prediction], inputs: StepInputs) -> torch.Tensor:
        """Joint next positions (n, 3) nm drawn with the bundle's generator (:mod:`openmm_mlcg.generators`).

        The graph is rebuilt on the noisy positions at every Score GNN pass; ``inputs.box`` must be validated
        already. ``prediction`` is the Dynamics GNN's (None when the generator does not use it).

        Raises:
            ValueError: the generator needs the Dynamics GNN's prediction and got None, or ``inputs`` lack what it
            needs (``"cg_langevin"``: bead embedding and masses).
        """
        gen = self.metadata.generator
        if gen.needs_dynamics(self.metadata) and prediction is None:
            raise ValueError(f"prediction: the {gen.name!r} sampler needs the Dynamics GNN's prediction, got None")
        return gen.step(self, positions, prediction, inputs)

    # ------------------------------------------------------------------ one model step (runtime)
    def step(self, positions: torch.Tensor, history: torch.Tensor, box: Optional[torch.Tensor],
             bead_embedding: torch.Tensor, bead_masses: torch.Tensor, cg_bonds: torch.Tensor,
             refine: bool = True, generator: Optional[torch.Generator] = None,
             deterministic: bool = False, bead_friction: Optional[torch.Tensor] = None, score_terms=None,
             external_score=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """One model step: predict, refine (or sample), remove the periodic centre-of-mass drift, roll history.

        The refined ``"cg_langevin"`` step skips the Dynamics GNN (its Langevin dynamics needs only the Score GNN).

        Args:
            positions: (n, 3) nm. history: (n, k, 3) node-major, nm per model step. box: (3, 3) nm (validated)
            or None. bead_embedding, bead_masses, cg_bonds: of the system (:meth:`embed`, SystemGraph).
            refine: use the Score GNN sampler (when :attr:`refines`). generator: RNG on the device.
            deterministic: no random numbers. bead_friction: (n, 1) 1/ps of the ``"cg_langevin"`` sampler or None.
            score_terms: the system's :class:`openmm_mlcg.priors.ScoreTerms` (``"cg_langevin"``) or None.
            external_score: ``f(x) -> (n, 3)``, F_ext / kT in 1/nm of forces that are not learned (the CG
                System's own forces) or None. The periodic centre-of-mass drift is then kept: external forces
                need not sum to zero (a restraint, a field on a charged subset), and the dynamics is then that of
                Langevin MD with those forces, whose centre of mass is not conserved either.

        Returns:
            (positions (n, 3), history (n, k, 3)): the new state; ``history[:, -1] = x_new - x``.

        Raises:
            ValueError: ``external_score`` for an unrefined step or a generator without ``honours_forces``.
        """
        refined = refine and self.refines
        if external_score is not None and not (refined and self.metadata.generator.honours_forces):
            raise ValueError(f"external_score: forces that are not learned act only in the refined step of a "
                             f"generator that integrates them (cg_langevin); got refine={refine}, sampler "
                             f"{self.metadata.sampler!r}")
        prediction = None
        if not refined or self.uses_dynamics_in_refinement:
            prediction = self.predict(positions, history, bead_embedding, bead_masses,
                                      self.edges(positions, box, cg_bonds, validate=False))
        if refined:
            x_new = self.refine(positions, prediction, StepInputs(box, cg_bonds, bead_embedding, bead_masses,
                                                                  bead_friction, score_terms, generator, deterministic,
                                                                  external_score))
        else:
            x_new = self.sample(prediction, generator, deterministic)
        if box is not None and external_score is None:  # momentum conservation: no drift of the periodic system's centre of mass
            w = bead_masses.to(x_new.dtype)
            x_new = x_new - ((w / w.sum())[:, None] * (x_new - positions)).sum(0, keepdim=True)
        return x_new, torch.cat([history[:, 1:], (x_new - positions).unsqueeze(1)], 1)

    # ------------------------------------------------------------------ training loss
    def loss(self, batch, graphs: Sequence[SystemGraph], generator: Optional[torch.Generator] = None,
             train: bool = True, options: LossOptions = LossOptions(),
             return_prediction: bool = False) -> Dict[str, torch.Tensor]:
        """L = Gaussian NLL + ``score_weight`` x the score's loss on a collated mini-batch
        (:func:`openmm_mlcg.model.objective.training_loss`, which documents the arguments and the result)."""
        return training_loss(self, batch, graphs, generator, train, options, return_prediction)
