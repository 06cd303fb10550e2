"""Relaxed convolutions built on escnn's exactly equivariant steerable basis.

* ``RelaxedGroupConv`` — relaxed group convolution (docs/networks.md):
  ``[f * Psi](g) = sum_h sum_l f(h) w_l(h) Psi_l(g^-1 h)``. The L filter banks Psi_l are exact escnn
  group-convolution filters (R2Conv onto regular fields, so the rotated copies of a bank are exact for every
  element of C_N / D_N, 45 deg included); ``relaxed_weights`` has shape (|G|, L) and starts at 1/(L|G|),
  where the layer *is* an exact group convolution. In a lifting layer (trivial input fields) w_l indexes the
  output element g; in a group-to-group layer it indexes the input element h, as in the formula.
* ``RelaxedSteerableConv`` — relaxed steerable convolution: ``sum_y sum_b (w_b(y) * Phi_b(y)) f(x + y)``,
  the escnn basis Phi_b with coefficients that may differ at every kernel position y; starts equal to an
  escnn R2Conv (same coefficients at every y).

Both fold into one plain ``torch.nn.Conv2d`` (``export()``) and project back to an exact escnn R2Conv
(``to_exact()``: the group / spatial average of the relaxed weights).
"""

from __future__ import annotations

import math

import torch
from escnn import nn as enn
from torch import nn

from .config import NetworkError

# On the CPU, convolutions and 2x2 max-pools over channels-last (NHWC) maps ran 1.4-1.6x faster per SAC update than
# over NCHW ones at these layer sizes (docs/results/training.md, "Where an update's time goes"): the same sums, equal
# to float rounding (tests/test_sac_speed.py). The encoders hand their input over in this layout; a one-channel
# input is NCHW and NHWC at once (torch keeps it NCHW), so the relaxed convs also pass their output through it.
# Exported networks and GPU tensors keep torch's default layout. False: NCHW everywhere.
CHANNELS_LAST = True


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the channels-last layout on the CPU (a no-op when it already is), as it is elsewhere."""
    if CHANNELS_LAST and x.device.type == "cpu" and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _field_kind(field_type: enn.FieldType) -> str:
    reps = field_type.representations
    if all(r.is_trivial() for r in reps):
        return "trivial"
    if all(r.name == "regular" for r in reps):
        return "regular"
    raise NetworkError(f"relaxed convolutions need all-trivial or all-regular input fields, got "
                       f"{[r.name for r in reps]}")


class _RelaxedConvBase(enn.EquivariantModule):
    """Shared parts: bias per output field, filter caching in eval mode, export to Conv2d."""

    def __init__(self, in_type: enn.FieldType, out_fields: int, kernel_size: int, padding: int | None = None) -> None:
        super().__init__()
        gspace = in_type.gspace
        self.in_type = in_type
        self.out_type = enn.FieldType(gspace, [gspace.regular_repr] * out_fields)
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2 if padding is None else padding  # None: 'same' (odd kernels)
        self.group_order = gspace.fibergroup.order()
        self.out_fields = out_fields
        self.bias = nn.Parameter(torch.zeros(out_fields))
        self._cached: torch.Tensor | None = None

    def filter(self) -> torch.Tensor:  # [out_channels, in_channels, k, k]
        raise NotImplementedError

    def expanded_bias(self) -> torch.Tensor:
        return self.bias.repeat_interleave(self.group_order)

    def _weight(self) -> torch.Tensor:
        if self.training:
            return self.filter()
        if self._cached is None:
            self._cached = self.filter().detach()
        return self._cached

    def train(self, mode: bool = True):
        self._cached = None
        out = super().train(mode)
        self._keep_children_training()
        return out

    def _keep_children_training(self) -> None:
        """escnn convs used only as basis holders stay in train mode (no cached buffers in state_dict)."""

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        if x.type != self.in_type:
            raise NetworkError(f"{type(self).__name__}: input field type does not match the layer's")
        out = torch.nn.functional.conv2d(x.tensor, self._weight(), self.expanded_bias(), padding=self.padding)
        return enn.GeometricTensor(channels_last(out), self.out_type)

    def evaluate_output_shape(self, input_shape):
        side = [n + 2 * self.padding - self.kernel_size + 1 for n in input_shape[2:]]
        return (input_shape[0], self.out_type.size, *side)

    def export(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_type.size, self.out_type.size, self.kernel_size, padding=self.padding)
        with torch.no_grad():
            conv.weight.copy_(self.filter())
            conv.bias.copy_(self.expanded_bias())
        return conv

    def _exact_conv(self) -> enn.R2Conv:
        return enn.R2Conv(self.in_type, self.out_type, self.kernel_size, padding=self.padding, bias=True,
                          initialize=False)

    def _set_exact_bias(self, conv: enn.R2Conv) -> None:
        with torch.no_grad():
            target = self.expanded_bias().detach()
            conv.bias.copy_(torch.linalg.pinv(conv.bias_expansion) @ target)

    def regularization(self) -> torch.Tensor:
        raise NotImplementedError


class RelaxedGroupConv(_RelaxedConvBase):
    """Relaxed lifting (trivial input) or group-to-group (regular input) convolution with L filter banks."""

    def __init__(self, in_type: enn.FieldType, out_fields: int, kernel_size: int, banks: int,
                 padding: int | None = None) -> None:
        super().__init__(in_type, out_fields, kernel_size, padding)
        self.kind = "lifting" if _field_kind(in_type) == "trivial" else "group"
        self.banks = banks
        gspace = in_type.gspace
        bank_type = enn.FieldType(gspace, [gspace.regular_repr] * (banks * out_fields))
        self.bank = enn.R2Conv(in_type, bank_type, kernel_size, padding=self.padding, bias=False)
        # The combined filter at init has the bank's (He) scale (docs/networks.md). The factor is applied in
        # filter(), not folded into the bank's weights: Adam's steps have a fixed size in parameter space, so
        # weights stored |G| sqrt(L) times larger changed that many times slower than an exact layer's.
        self.register_buffer("bank_scale", torch.tensor(self.group_order * math.sqrt(banks)))
        init = 1.0 / (banks * self.group_order)
        self.relaxed_weights = nn.Parameter(torch.full((self.group_order, banks), init))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        if prefix + "bank_scale" not in state_dict:  # saved when the bank's weights carried the factor
            state_dict[prefix + "bank_scale"] = self.bank_scale.clone()
            if prefix + "bank.weights" in state_dict:
                state_dict[prefix + "bank.weights"] = state_dict[prefix + "bank.weights"] / self.bank_scale
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _keep_children_training(self) -> None:
        self.bank.train(True)

    def _banks(self) -> torch.Tensor:
        flat = self.bank.basisexpansion(self.bank.weights)  # [L*O*G, Cin, k*k]
        k = self.kernel_size
        return flat.reshape(self.banks, self.out_fields, self.group_order, self.in_type.size, k, k)

    def filter(self) -> torch.Tensor:
        f = self._banks()
        w = self.relaxed_weights
        k = self.kernel_size
        if self.kind == "lifting":
            out = torch.einsum("gl,logcxy->ogcxy", w, f)
        else:
            f = f.reshape(*f.shape[:3], -1, self.group_order, k, k)  # [L, O, G, I, H, k, k]
            out = torch.einsum("hl,logihxy->ogihxy", w, f)
        return (out * self.bank_scale).reshape(self.out_type.size, self.in_type.size, k, k)

    def regularization(self) -> torch.Tensor:
        """Mean |w_l(h) - mean_h w_l(h)|, relative to the initial value: 0 exactly when equivariant."""
        w = self.relaxed_weights
        return (w - w.mean(0, keepdim=True)).abs().mean() * (self.banks * self.group_order)

    def to_exact(self) -> enn.R2Conv:
        """The exact R2Conv this layer equals when every w_l(h) is its group average."""
        conv = self._exact_conv()
        coef = self.bank.weights.detach().reshape(self.banks, -1)  # escnn layout [out field, in field, basis]
        coef = coef.reshape(self.banks, self.out_fields, -1)
        w_mean = self.relaxed_weights.detach().mean(0)  # [L]
        with torch.no_grad():
            conv.weights.copy_(torch.einsum("l,lob->ob", w_mean, coef).reshape(-1) * self.bank_scale)
        self._set_exact_bias(conv)
        return conv


class RelaxedSteerableConv(_RelaxedConvBase):
    """escnn steerable basis with coefficients per kernel position (regular output fields)."""

    def __init__(self, in_type: enn.FieldType, out_fields: int, kernel_size: int, padding: int | None = None) -> None:
        super().__init__(in_type, out_fields, kernel_size, padding)
        _field_kind(in_type)
        conv = enn.R2Conv(in_type, self.out_type, kernel_size, padding=self.padding, bias=False)
        n_out, n_in = len(self.out_type), len(in_type)
        per_block = conv.basisexpansion.dimension() // (n_out * n_in)
        o_size, i_size = self.out_type.representations[0].size, in_type.representations[0].size
        basis = []
        with torch.no_grad():
            for j in range(per_block):  # escnn's weights are laid out [out field, in field, basis element]
                onehot = torch.zeros(conv.basisexpansion.dimension())
                onehot[j] = 1.0
                basis.append(conv.basisexpansion(onehot)[:o_size, :i_size])
        self.register_buffer("basis", torch.stack(basis), persistent=False)  # [b, o, i, k*k]
        positions = kernel_size * kernel_size
        start = conv.weights.detach().reshape(n_out, n_in, per_block, 1).repeat(1, 1, 1, positions)
        self.coefficients = nn.Parameter(start.clone())  # [O, I, b, k*k]

    def filter(self) -> torch.Tensor:
        k = self.kernel_size
        out = torch.einsum("OIbs,bois->OoIis", self.coefficients, self.basis)
        return out.reshape(self.out_type.size, self.in_type.size, k, k)

    def regularization(self) -> torch.Tensor:
        """Mean |w(y) - w(y')| over horizontally and vertically neighbouring kernel positions y, y'."""
        k = self.kernel_size
        c = self.coefficients.reshape(*self.coefficients.shape[:3], k, k)
        if k == 1:
            return c.sum() * 0.0
        dx = (c[..., :, 1:] - c[..., :, :-1]).abs()
        dy = (c[..., 1:, :] - c[..., :-1, :]).abs()
        return torch.cat([dx.reshape(-1), dy.reshape(-1)]).mean()

    def to_exact(self) -> enn.R2Conv:
        """The exact R2Conv with the spatially averaged coefficients (equal to this layer when constant)."""
        conv = self._exact_conv()
        with torch.no_grad():
            conv.weights.copy_(self.coefficients.detach().mean(-1).reshape(-1))
        self._set_exact_bias(conv)
        return conv
