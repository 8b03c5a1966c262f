"""EWC for a population (the single-run form and its sources: ``cl_core.methods.ewc``).

Penalty of member m: s_m · Σ_terms Σ_i F_i (θ_i − θ*_i)² with s_m = λ_m (· 1/2 when ``half``);
its gradient 2 s_m F (θ − θ*) is added in closed form. Members may differ in every EWC
hyperparameter except whether merge is "separate" (one term per task instead of one running term).
"""

from __future__ import annotations

import torch

from cl_core.population.fisher import stacked_fisher
from cl_core.population.methods.base import PopulationMethod

FISHER_KINDS = ("empirical", "expected", "sampled", "batch")
MERGES = ("sum", "mean", "online", "separate")


class PopulationEWC(PopulationMethod):
    name = "ewc"
    handles = {
        "lambda": None,
        "fisher": FISHER_KINDS,
        "fisher_samples": None,
        "fisher_batch_size": None,
        "merge": MERGES,
        "gamma": None,
        "half": None,
    }

    @classmethod
    def shared_settings(cls, params) -> tuple:
        return (("separate_terms", params["merge"] == "separate"),)

    def __init__(self, params, pctx, net) -> None:
        super().__init__(params, pctx, net)
        scale = [p["lambda"] * (0.5 if p["half"] else 1.0) for p in params]
        self.scale = self.pctx.per_member(scale)
        self.twice_scale = self.pctx.per_member([2 * s for s in scale])
        self.terms: list[tuple[torch.Tensor, torch.Tensor]] = []  # (Fisher, anchor), (M, P)

    def state_tensors(self) -> list[str]:
        return ["scale", "twice_scale", "terms"]

    @torch.no_grad()
    def penalty(self, task: int) -> torch.Tensor | None:
        if not self.terms:
            return None
        theta, grad = self.net.theta, self.net.grad
        total = torch.zeros(theta.shape[0], device=theta.device)
        for fisher, anchor in self.terms:
            diff = theta - anchor
            weighted = fisher * diff
            total += torch.linalg.vecdot(weighted, diff)
            grad.addcmul_(weighted, self.twice_scale)
        return self.scale.squeeze(1) * total

    @torch.no_grad()
    def after_task(self, task: int) -> None:
        if task == self.pctx.seq.n_tasks - 1:
            return  # no later task would use this Fisher
        new = self._fisher(task)
        anchor = self.net.theta.detach().clone()
        separate = self.params[0]["merge"] == "separate"
        if separate or not self.terms:
            self.terms.append((new, anchor))
            return
        old = self.terms[0][0]
        merged = torch.empty_like(new)
        for merge, members in self._members_by(lambda p: p["merge"]).items():
            idx = torch.tensor(members, device=new.device)
            o, n = old.index_select(0, idx), new.index_select(0, idx)
            if merge == "sum":
                merged[idx] = o + n
            elif merge == "mean":
                merged[idx] = (n + task * o) / (task + 1)
            else:
                gamma = self.pctx.per_member([self.params[i]["gamma"] for i in members])
                merged[idx] = gamma * o + n
        self.terms = [(merged, anchor)]

    def _fisher(self, task: int) -> torch.Tensor:
        """Each member's Fisher with its own settings; members sharing settings in one pass."""
        fisher = torch.empty_like(self.net.theta)
        key = lambda p: (p["fisher"], p["fisher_samples"], p["fisher_batch_size"])  # noqa: E731
        # every member draws its Fisher rows from its generator in member order, as in a run
        for (kind, samples, batch_size), members in self._members_by(key).items():
            part = stacked_fisher(self.net, self.pctx, members, task, kind, samples, batch_size)
            fisher[torch.tensor(members, device=fisher.device)] = part
        return fisher

    def _members_by(self, key) -> dict:
        groups: dict = {}
        for i, p in enumerate(self.params):
            groups.setdefault(key(p), []).append(i)
        return groups
