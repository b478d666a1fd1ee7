"""The names users pick a run-time with: engines, devices and precisions. Light on
purpose, so that command lines can offer them without loading Paddle."""
import re

PRECISIONS = ('fp32', 'bf16', 'fp16')
DEVICE_PATTERN = re.compile(r'cpu|gpu(:\d{1,3})?')
# Engines that run an exported model; 'auto' measures the installed ones on first use.
ENGINES = ('paddle', 'openvino', 'onnxruntime')
ENGINE_CHOICES = ('auto',) + ENGINES
# What to install for each optional engine (the paddle2onnx route serves both on Paddle 3).
ENGINE_EXTRAS = {'openvino': 'pip install openvino paddle2onnx',
                 'onnxruntime': 'pip install onnxruntime paddle2onnx'}
