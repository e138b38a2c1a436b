"""Adam without an optimiser object: ``torch.optim.Adam``'s arithmetic and state layout, bit for bit.

The first use of a ``torch.optim`` optimiser object imports torch's compiler stack (``torch._dynamo``,
1.2 CPU-seconds measured on a 2-core AMD EPYC), which every process that fine-tunes or projects (each
command-line run, UI server, batch and Ray worker) would pay for nothing. :class:`Adam` keeps the same
state and steps it with torch's own functional Adam (``torch.optim.adam.adam``, which
``torch.optim.Adam.step`` calls with the same arguments), so the updates are the same bits; its
``state_dict`` has ``torch.optim.Adam``'s layout, so resume files load into either.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam
from torch.optim.optimizer import _get_scalar_dtype

__all__ = ["Adam"]


class Adam:
    """Adam over one group of parameters, with ``torch.optim.Adam``'s defaults and ``fused`` option.

    Attributes:
        params: the parameters, in the order their state is numbered.
        param_groups: one group as ``torch.optim.Adam`` keeps it (a schedule may set its ``"lr"``).
        state: per parameter that has been stepped, ``{"step", "exp_avg", "exp_avg_sq"}``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        fused: bool | None = None,
    ):
        self.params = list(params)
        self.param_groups = [
            {
                "lr": lr,
                "betas": (float(betas[0]), float(betas[1])),
                "eps": eps,
                "weight_decay": 0,
                "amsgrad": False,
                "maximize": False,
                "foreach": None,
                "capturable": False,
                "differentiable": False,
                "fused": fused,
                "decoupled_weight_decay": False,
            }
        ]
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            param.grad = None

    def _state(self, index: int) -> dict[str, torch.Tensor]:
        """A parameter's state, made on its first step as ``torch.optim.Adam`` makes it."""
        if index not in self.state:
            param = self.params[index]
            # the step count lives on the parameter's device for the fused kernel, else on the CPU
            if self.param_groups[0]["fused"]:
                step = torch.zeros((), dtype=torch.float32, device=param.device)
            else:
                step = torch.tensor(0.0, dtype=_get_scalar_dtype(), device="cpu")
            self.state[index] = {
                "step": step,
                "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
            }
        return self.state[index]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (``torch.optim.Adam.step``'s call)."""
        group = self.param_groups[0]
        live = [i for i, param in enumerate(self.params) if param.grad is not None]
        states = [self._state(i) for i in live]
        adam(
            [self.params[i] for i in live],
            [self.params[i].grad for i in live],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            amsgrad=False,
            has_complex=any(torch.is_complex(self.params[i]) for i in live),
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            foreach=group["foreach"],
            capturable=False,
            differentiable=False,
            fused=group["fused"],
            decoupled_weight_decay=False,
        )

    def state_dict(self) -> dict:
        """``torch.optim.Adam.state_dict()``'s layout: state by parameter index, the group's settings."""
        return {
            "state": {i: dict(self.state[i]) for i in sorted(self.state)},
            "param_groups": [{**self.param_groups[0], "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state saved by this class or by ``torch.optim.Adam`` (one group of these parameters);
        tensors move to their parameter's device and dtype as ``torch.optim.Adam.load_state_dict`` does."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            sizes = [len(g["params"]) for g in groups]
            raise ValueError(
                f"optimizer state has groups of {sizes} parameters, expected one of {len(self.params)}"
            )
        index = {saved: i for i, saved in enumerate(groups[0]["params"])}
        fused = groups[0].get("fused")
        self.state = {}
        for saved, values in state_dict["state"].items():
            param = self.params[index[saved]]
            self.state[index[saved]] = {
                key: _placed(key, value, param, fused) for key, value in values.items()
            }
        # the saved settings replace ours, "fused" included, as torch.optim.Adam.load_state_dict does
        settings = {key: value for key, value in groups[0].items() if key != "params"}
        self.param_groups = [{**self.param_groups[0], **settings}]


def _placed(key: str, value: torch.Tensor, param: torch.Tensor, fused: bool | None) -> torch.Tensor:
    """A loaded state tensor where ``torch.optim.Adam`` puts it: the step count stays where it was unless
    the fused kernel needs it beside the parameter; the moments take the parameter's device and dtype."""
    if key == "step":
        return value.to(dtype=torch.float32, device=param.device) if fused else value
    return (
        value.to(dtype=param.dtype, device=param.device)
        if param.is_floating_point()
        else value.to(param.device)
    )
