"""DeformConv against deformable convolution written out by hand in float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vfe_hub.layers.deform_conv import DeformConv

from deform_reference import deform_conv_reference


@pytest.mark.parametrize("modulated", [True, False])
@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_deform_conv_equals_float64_reference(modulated, stride, padding, dilation):
    torch.manual_seed(0)
    conv = DeformConv(3, 5, 3, stride, padding, dilation, modulated=modulated, bias=True, offset_bias=True).double()
    with torch.no_grad():
        conv.offset.weight.normal_(0, 0.3)
        conv.offset.bias.uniform_(-2, 2)
        conv.offset.bias[:4] = torch.tensor([9.0, -8.5, 12.0, 0.25])  # taps sampling far outside the map
        conv.bias.normal_()
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    raw = conv.offset(x)
    offset, mask = (raw[:, :18], raw[:, 18:].sigmoid()) if modulated else (raw, None)
    assert raw.shape[1] == (27 if modulated else 18)
    assert (offset.abs() > 8).any(), "some samples must fall outside the map"
    expected = deform_conv_reference(x, offset, conv.weight, conv.bias, stride, padding, dilation, mask)
    actual = conv(x)
    h_out = (7 + 2 * padding - dilation * 2 - 1) // stride + 1
    assert actual.shape == (2, 5, h_out, (9 + 2 * padding - dilation * 2 - 1) // stride + 1)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("modulated", [True, False])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 2)])
def test_deform_conv_with_zero_offsets_and_unit_mask_is_a_plain_conv(modulated, stride, dilation):
    torch.manual_seed(1)
    conv = DeformConv(4, 6, 3, stride, dilation, dilation, modulated=modulated, bias=False, offset_bias=True)
    with torch.no_grad():
        conv.offset.weight.zero_()
        conv.offset.bias.zero_()
        conv.offset.bias[18:] = 100.0  # mask sigmoid(100) == 1
    assert conv.bias is None
    x = torch.randn(2, 4, 10, 11)
    expected = F.conv2d(x, conv.weight, None, stride, dilation, dilation)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_deform_conv_parameter_names_and_shapes():
    modulated = DeformConv(8, 16, modulated=True, bias=False, offset_bias=False)
    assert {k: tuple(v.shape) for k, v in modulated.state_dict().items()} == {
        "offset.weight": (27, 8, 3, 3), "weight": (16, 8, 3, 3)}
    plain = DeformConv(8, 16, modulated=False, bias=True, offset_bias=True)
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == {
        "offset.weight": (18, 8, 3, 3), "offset.bias": (18,), "weight": (16, 8, 3, 3), "bias": (16,)}
