"""The names users pick a run-time with: engines, devices and precisions. Light on
purpose, so that command lines can offer them without loading Paddle. Every other module
reads these names from here."""
import re

# int8: made by `paddle-dla quantize` and carried by its export; run on CPU by OpenVINO
# (onnxruntime runs the dense networks' INT8 models of earlier releases).
INT8 = 'int8'
PRECISIONS = ('fp32', 'bf16', 'fp16', INT8)
# INT8 calibration: NNCF's own default count of images, and the fewest that leave the
# activation ranges to more than chance.
DEFAULT_CALIBRATION_IMAGES, MIN_CALIBRATION_IMAGES = 300, 8
DEVICE_PATTERN = re.compile(r'cpu|gpu(:\d{1,3})?')

# Engines that run an exported model; 'auto' measures the installed ones on first use.
PADDLE, OPENVINO, ONNXRUNTIME = 'paddle', 'openvino', 'onnxruntime'
ENGINES = (PADDLE, OPENVINO, ONNXRUNTIME)
OPTIONAL_ENGINES = (OPENVINO, ONNXRUNTIME)
AUTO = 'auto'
ENGINE_CHOICES = (AUTO,) + ENGINES
# The model itself in Paddle's dynamic graph, without an export: what the others are
# compared with, and a choice of the commands that can build the model.
EAGER = 'eager'
RUN_CHOICES = ENGINE_CHOICES + (EAGER,)
# Names of earlier releases, still accepted: 'inference' was Paddle Inference before it was
# one engine among several.
OLD_ENGINE_NAMES = {'inference': PADDLE}
# The precisions each engine is offered for on CPU (onnxruntime has no bf16 kernels on x86).
CPU_PRECISIONS = {PADDLE: ('fp32', 'bf16'), OPENVINO: ('fp32', 'bf16', INT8),
                  ONNXRUNTIME: ('fp32', INT8)}
# The engine that runs the INT8 models, classifiers and dense networks alike: NNCF into an
# OpenVINO IR was the fastest route measured (a dense network's deformable convolutions stay
# in float). Until 2026-12-07 a dense network became an ONNX model with quantize-dequantize
# pairs, for onnxruntime, 0.6x as fast as OpenVINO's on AVX2; those exports still run there.
INT8_ENGINE = OPENVINO
# What to install for each optional engine (the paddle2onnx route serves both on Paddle 3).
ENGINE_EXTRAS = {OPENVINO: 'pip install openvino paddle2onnx',
                 ONNXRUNTIME: 'pip install onnxruntime paddle2onnx'}

# The benchmark's rows: Paddle eager (the reference), each engine at each CPU precision, and
# PyTorch when it is installed.
BENCH_REFERENCE = f'{PADDLE} {EAGER}'
TORCH_EAGER, TORCH_CHANNELS_LAST = 'torch eager', 'torch channels-last'
# NNCF's INT8 model with NNCF's defaults, run by OpenVINO: what our INT8 is measured against.
NNCF_BASELINE = 'nncf int8'
BENCH_ENGINES = ((BENCH_REFERENCE,)
                 + tuple(f'{e} {p}' for e in ENGINES for p in CPU_PRECISIONS[e]
                         if p != INT8 or e == INT8_ENGINE)
                 + (NNCF_BASELINE, TORCH_EAGER, TORCH_CHANNELS_LAST))
