"""Adam and AdamW without ``torch.optim`` (docs/design.md §4.4).

The first step, or even the construction, of any ``torch.optim`` optimizer imports
``torch._dynamo`` (its ``step`` and ``zero_grad`` are wrapped to stay out of ``torch.compile``
graphs), and that import alone costs 1.1-1.4 s of a fresh process on this project's CPU machine,
which every fit from the command line paid (docs/benchmarks.md §10.10). :class:`Adam` is the same update in the same floating-point operations, for the two
code paths of ``torch.optim.Adam`` / ``AdamW`` the package uses (one tensor at a time, and the
``foreach`` path that updates every tensor in one call), so a fit gives bit-for-bit the scores it
gave with ``torch.optim`` (``tests/test_optim.py`` compares every step with torch's).

Only what the package needs: one parameter group, no AMSGrad, no ``maximize``, no complex
parameters, no ``capturable`` or ``fused`` modes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["Adam"]


class Adam:
    """``torch.optim.Adam`` (``decoupled=False``) or ``torch.optim.AdamW`` (``decoupled=True``).

    Parameters
    ----------
    params : iterable of tensors
        The parameters to update (``requires_grad``); those without a gradient at a step are
        left as they are, as torch does.
    lr : float
        Learning rate; ``param_groups[0]["lr"]`` is read at every step, so a schedule may change it.
    betas : (float, float)
    eps : float
    weight_decay : float
        L2 penalty added to the gradient (Adam), or decoupled decay ``p *= 1 - lr * wd`` (AdamW).
    decoupled : bool
        AdamW's decoupled weight decay.
    foreach : bool or None
        Update all tensors with ``torch._foreach_*`` calls (torch's ``foreach=True`` path) instead
        of one tensor at a time. The two paths round differently; each matches its torch
        counterpart exactly. ``None``: torch's default, the foreach path for CUDA tensors only.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled: bool = False,
        foreach: bool | None = None,
    ) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups = [{"params": params, "lr": float(lr), "betas": tuple(map(float, betas)),
                              "eps": float(eps), "weight_decay": float(weight_decay)}]
        self.decoupled = bool(decoupled)
        # torch's default (foreach=None): the foreach path for CUDA tensors, one at a time on CPU
        self.foreach = all(p.is_cuda for p in params) if foreach is None else bool(foreach)
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (``set_to_none=True``, torch's default), or zero it in place."""
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(p)
        if state is None:  # torch's lazy initialisation: a float32 step counter and zero moments
            state = self.state[p] = {
                "step": torch.tensor(0.0, dtype=torch.float32),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return state

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        group = self.param_groups[0]
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        states = [self._state(p) for p in params]
        if self.foreach:
            self._step_foreach(params, states, lr, beta1, beta2, eps, wd)
        else:
            self._step_single(params, states, lr, beta1, beta2, eps, wd)

    def _step_single(self, params, states, lr, beta1, beta2, eps, wd) -> None:
        for p, state in zip(params, states, strict=True):
            grad = p.grad
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            step_t += 1
            if wd != 0:
                if self.decoupled:
                    p.mul_(1 - lr * wd)
                else:
                    grad = grad.add(p, alpha=wd)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)

    def _step_foreach(self, params, states, lr, beta1, beta2, eps, wd) -> None:
        # torch groups tensors by device and dtype first; one group here (checked)
        if len({(p.device, p.dtype) for p in params}) != 1:
            raise ValueError("foreach=True needs every parameter on one device, in one dtype")
        grads = [p.grad for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        if wd != 0:
            if self.decoupled:
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        bias_correction1 = [1 - beta1 ** s.item() for s in steps]
        bias_correction2 = [1 - beta2 ** s.item() for s in steps]
        step_size = [(lr / bc) * -1 for bc in bias_correction1]
        bias_correction2_sqrt = [bc**0.5 for bc in bias_correction2]
        exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(exp_avg_sq_sqrt, bias_correction2_sqrt)
        torch._foreach_add_(exp_avg_sq_sqrt, eps)
        torch._foreach_addcdiv_(params, exp_avgs, exp_avg_sq_sqrt, step_size)
