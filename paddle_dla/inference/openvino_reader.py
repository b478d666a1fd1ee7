"""OpenVINO reading the ONNX translations of our exports, deformable convolutions included.

paddle2onnx writes a deformable convolution as ONNX ``DeformConv`` (opset 19), which
OpenVINO's ONNX reader does not know. It is OpenVINO's own ``DeformableConvolution``
(opset 8): the same offsets, a (dy, dx) pair per kernel tap and offset group, and the same
modulation mask. DCNv2 samples bilinearly with zeros outside the image, so a tap within a
pixel of the border still reads the pixels inside; OpenVINO does that only with
``bilinear_interpolation_pad`` set. The tests hold the result to Paddle's own deformable
convolution, and the reverse order of the pairs, or the flag unset, to failing.
"""


def _bias_shape():
    import numpy as np
    import openvino.opset8 as ops
    return ops.constant(np.array([1, -1, 1, 1], np.int64))


def deform_conv(node):
    """ONNX ``DeformConv(X, W, offset[, B[, mask]])`` as OpenVINO's operations."""
    import openvino.opset8 as ops
    inputs = node.get_input_size()
    pads = node.get_attribute('pads', [0, 0, 0, 0])
    conv = ops.deformable_convolution(
        node.get_input(0), node.get_input(2), node.get_input(1),
        strides=node.get_attribute('strides', [1, 1]), pads_begin=pads[:2], pads_end=pads[2:],
        dilations=node.get_attribute('dilations', [1, 1]),
        mask=node.get_input(4) if inputs > 4 else None,
        group=node.get_attribute('group', 1),
        deformable_group=node.get_attribute('offset_group', 1),
        bilinear_interpolation_pad=True)
    if inputs > 3:
        conv = ops.add(conv, ops.reshape(node.get_input(3), _bias_shape(), False))
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
