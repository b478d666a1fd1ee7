"""OpenVINO reading the ONNX translations of our exports, deformable convolutions included.

paddle2onnx writes a deformable convolution as ONNX ``DeformConv`` (opset 19), which
OpenVINO's ONNX reader does not know. It is OpenVINO's own ``DeformableConvolution``
(opset 8): the same offsets, a (dy, dx) pair per kernel tap and offset group, and the same
modulation mask. DCNv2 samples bilinearly with zeros outside the image, so a tap within a
pixel of the border still reads the pixels inside; OpenVINO does that only with
``bilinear_interpolation_pad`` set. The tests hold the result to Paddle's own deformable
convolution, and the reverse order of the pairs, or the flag unset, to failing.
"""


def opset():
    """OpenVINO's opset 8 (``openvino.opset8``; ``openvino.runtime.opset8`` before 2025)."""
    try:
        import openvino.opset8 as ops
    except ImportError:
        import openvino.runtime.opset8 as ops
    return ops


def _given(node, index):
    """Input ``index`` of ``node``, or None where it is absent or named "" (skipped)."""
    if node.get_input_size() <= index:
        return None
    value = node.get_input(index)
    return None if value.get_node().get_type_name() == 'NullNode' else value


def _offset_groups(node):
    """``offset_group``, from the shapes where they are known: paddle2onnx leaves the
    attribute out for Paddle's ``deformable_groups`` above 1, and the offsets hold 2 x kH x
    kW channels per group."""
    weights, offsets = node.get_input(1).get_partial_shape(), node.get_input(2).get_partial_shape()
    if offsets.rank.is_static and weights.rank.is_static and all(
            d.is_static for d in (offsets[1], weights[2], weights[3])):
        return offsets[1].get_length() // (2 * weights[2].get_length() * weights[3].get_length())
    if node.has_attribute('offset_group'):
        return node.get_attribute('offset_group')
    raise ValueError('DeformConv without offset_group, and offsets or weights of unknown '
                     'shape: cannot tell its offset groups')


def deform_conv(node):
    """ONNX ``DeformConv(X, W, offset[, B[, mask]])`` as OpenVINO's operations."""
    import numpy as np
    ops = opset()
    pads = node.get_attribute('pads', [0, 0, 0, 0])
    conv = ops.deformable_convolution(
        node.get_input(0), node.get_input(2), node.get_input(1),
        strides=node.get_attribute('strides', [1, 1]), pads_begin=pads[:2], pads_end=pads[2:],
        dilations=node.get_attribute('dilations', [1, 1]), mask=_given(node, 4),
        group=node.get_attribute('group', 1), deformable_group=_offset_groups(node),
        bilinear_interpolation_pad=True)
    bias = _given(node, 3)
    if bias is not None:
        conv = ops.add(conv, ops.reshape(bias, ops.constant(np.array([1, -1, 1, 1], np.int64)),
                                         False))
    return conv.outputs()


def openvino_core():
    """An OpenVINO ``Core`` that reads ONNX ``DeformConv``."""
    import openvino
    from openvino.frontend import ConversionExtension
    core = openvino.Core()
    core.add_extension(ConversionExtension('DeformConv', deform_conv))
    return core


def read_model(path):
    """The OpenVINO model of ``path`` (ONNX, OpenVINO IR or Paddle 2.6's program)."""
    return openvino_core().read_model(path)
