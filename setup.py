import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with open(os.path.join(HERE, name), encoding='utf-8') as f:
        return f.read()


def requirements(name):
    return [line.split('#')[0].strip() for line in read(name).splitlines()
            if line.split('#')[0].strip()]


RUNTIME = requirements('requirements.txt')

setup(
    name='paddle_dla',
    version=re.search(r"__version__ = '([^']+)'", read('paddle_dla/core/__init__.py')).group(1),
    description='Deep Layer Aggregation (DLA) ImageNet classifiers and backbones for PaddlePaddle, '
                'exact against the official PyTorch checkpoints',
    long_description=read('README.md'),
    long_description_content_type='text/markdown',
    license='BSD-3-Clause',
    python_requires='>=3.9',
    packages=find_packages(include=['paddle_dla', 'paddle_dla.*']),
    package_data={'paddle_dla': ['data/*.tsv']},
    entry_points={'console_scripts': ['paddle-dla=paddle_dla.cli:main']},
    # Paddle comes as two distributions (CPU and GPU builds); the user picks one as an extra.
    install_requires=[r for r in RUNTIME if not r.startswith('paddlepaddle')],
    extras_require={'cpu': [r for r in RUNTIME if r.startswith('paddlepaddle')],
                    'gpu': [r.replace('paddlepaddle', 'paddlepaddle-gpu') for r in RUNTIME
                            if r.startswith('paddlepaddle')],
                    'test': requirements('requirements-test.txt'),
                    'torch': ['torch>=2.1'],
                    # Engines that Predictor(engine='auto') measures against Paddle Inference;
                    # Paddle 3's .json exports reach them through paddle2onnx (1.x on Paddle 2.6).
                    'openvino': ['openvino>=2024.0', 'paddle2onnx'],
                    'onnxruntime': ['onnxruntime>=1.17', 'paddle2onnx'],
                    # paddle-dla quantize: NNCF's post-training INT8, run by OpenVINO.
                    'int8': ['nncf>=2.14', 'openvino>=2024.0', 'paddle2onnx', 'onnx',
                             'onnxruntime']},
)
