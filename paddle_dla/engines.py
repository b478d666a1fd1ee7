"""The names users pick a run-time with: devices and precisions. Light on purpose, so that
command lines can offer them without loading Paddle."""
import re

PRECISIONS = ('fp32', 'bf16', 'fp16')
DEVICE_PATTERN = re.compile(r'cpu|gpu(:\d{1,3})?')
