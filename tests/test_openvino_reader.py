"""OpenVINO reading ONNX ``DeformConv`` (``paddle_dla.inference.openvino_reader``), held to
ONNX's own reference evaluator (``onnx.reference``, the operator's specification in NumPy) on
one-node models: every attribute, inputs left out or named "" (skipped), and offset groups
given only by the shapes (paddle2onnx leaves the attribute out). Offsets of several pixels
put many taps outside the image. CenterNet on OpenVINO against Paddle is in
test_dense_cli.py."""
import numpy as np
import pytest

onnx = pytest.importorskip('onnx')
pytest.importorskip('openvino')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from paddle_dla.core.parity import relative_error  # noqa: E402
from paddle_dla.inference.openvino_reader import opset, openvino_core  # noqa: E402

TOLERANCE = 1e-5


ATTRIBUTES = ('strides', 'pads', 'dilations', 'group', 'offset_group')


def _model(tmp_path, inputs=('X', 'W', 'offset', 'B', 'mask'), channels=2, out_channels=4,
           kernel=3, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1,
           offset_group=1, attributes=ATTRIBUTES, size=(5, 7), seed=0, free_offsets=False):
    """A one-node DeformConv model file and its inputs; ``free_offsets``: the offsets'
    shape left unknown, channels included."""
    rng = np.random.default_rng(seed)
    tmp_path.mkdir(exist_ok=True)
    out_size = [(size[i] + pads[i] + pads[i + 2] - dilations[i] * (kernel - 1) - 1)
                // strides[i] + 1 for i in (0, 1)]
    taps = offset_group * kernel * kernel
    values = {'X': rng.standard_normal((2, channels, *size)),
              'W': rng.standard_normal((out_channels, channels // group, kernel, kernel)),
              'offset': 3 * rng.standard_normal((2, 2 * taps, *out_size)),
              'B': rng.standard_normal(out_channels),
              'mask': rng.uniform(0, 1, (2, taps, *out_size))}
    values = {k: v.astype(np.float32) for k, v in values.items()}
    given = dict(strides=list(strides), pads=list(pads), dilations=list(dilations),
                 group=group, offset_group=offset_group, kernel_shape=[kernel, kernel])
    node = helper.make_node('DeformConv', list(inputs), ['Y'],
                            **{a: given[a] for a in attributes})
    feeds = {n: values[n] for n in ('X', 'offset', 'mask') if n in inputs}
    graph = helper.make_graph(
        [node], 'deform', [helper.make_tensor_value_info(
            n, TensorProto.FLOAT, ['N', 'C', 'H', 'W'] if free_offsets and n == 'offset'
            else v.shape) for n, v in feeds.items()],
        [helper.make_tensor_value_info('Y', TensorProto.FLOAT, None)],
        [numpy_helper.from_array(values[n], n) for n in ('W', 'B') if n in inputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 19)])
    model.ir_version = 9
    path = str(tmp_path / 'deform.onnx')
    onnx.save(model, path)
    return model, path, feeds


def _openvino(path, feeds):
    core = openvino_core()
    compiled = core.compile_model(core.read_model(path), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    return compiled(feeds)[0]


CASES = {
    'every input': {},
    'stride 2, dilation 2, uneven pads': dict(strides=(2, 1), dilations=(2, 1),
                                              pads=(0, 2, 1, 0)),
    'groups 2, offset groups 2': dict(group=2, offset_group=2, channels=4),
    'offset groups from the shapes': dict(offset_group=2, attributes=('pads',)),
    'offset groups given, shapes unknown': dict(offset_group=2, free_offsets=True),
    'no mask, no bias': dict(inputs=('X', 'W', 'offset')),
    'bias skipped ("")': dict(inputs=('X', 'W', 'offset', '', 'mask')),
    'mask skipped ("")': dict(inputs=('X', 'W', 'offset', 'B', '')),
    'kernel 1, no attributes': dict(kernel=1, pads=(0, 0, 0, 0), attributes=()),
}


@pytest.mark.parametrize('case', CASES)
def test_openvino_computes_the_specification(tmp_path, case):
    _, path, feeds = _model(tmp_path, **CASES[case])
    # the same model and inputs with every attribute given: what the specification reads
    given = dict(CASES[case], attributes=ATTRIBUTES + ('kernel_shape',))
    model, _, _ = _model(tmp_path / 'given', **given)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    assert relative_error(_openvino(path, feeds), expected) <= TOLERANCE


def test_the_offset_pairs_in_the_other_order_fail(tmp_path, monkeypatch):
    """Read (dx, dy) for (dy, dx), the error is of the output's own size."""
    ops = opset()
    real = ops.deformable_convolution

    def pairs_reversed(data, offsets, *args, **kwargs):
        taps = offsets.get_partial_shape()[1].get_length()
        swap = ops.constant(np.arange(taps) ^ 1, np.int64)
        return real(data, ops.gather(offsets, swap, ops.constant(1, np.int64)), *args,
                    **kwargs)
    model, path, feeds = _model(tmp_path)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    monkeypatch.setattr(ops, 'deformable_convolution', pairs_reversed)
    assert relative_error(_openvino(path, feeds), expected) > 1000 * TOLERANCE


def test_offset_groups_neither_given_nor_known_are_refused(tmp_path):
    """Without the attribute and with offsets of unknown shape, one offset group would be a
    guess (Paddle's deformable_groups above 1 would then read the wrong offsets)."""
    _, path, _ = _model(tmp_path, offset_group=2, attributes=('pads',), free_offsets=True)
    with pytest.raises(Exception, match='cannot tell its offset groups'):
        openvino_core().read_model(path)
