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


setup(
    name='paddle_dla',
    version=re.search(r"__version__ = '([^']+)'", read('paddle_dla/__init__.py')).group(1),
    description='Deep Layer Aggregation (DLA) ImageNet classifiers and backbones for PaddlePaddle, '
                'exact against the official PyTorch checkpoints',
    long_description=read('README.md'),
    long_description_content_type='text/markdown',
    license='BSD-3-Clause',
    python_requires='>=3.8',
    packages=find_packages(include=['paddle_dla', 'paddle_dla.*']),
    install_requires=requirements('requirements.txt'),
    extras_require={'test': requirements('requirements-test.txt'),
                    'torch': ['torch>=2.1']},
)
