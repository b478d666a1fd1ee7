"""What this machine is, for every figure that depends on it: the CPU model, the vector
features that oneDNN, OpenVINO and onnxruntime choose their kernels by, and the versions
of the libraries that run the models. Read from /proc and package metadata, so it loads
nothing heavy."""
import importlib.metadata
import os
import platform

CPU_FEATURES = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16',
                'amx_tile')
PACKAGES = ('paddle_dla', 'paddlepaddle', 'paddlepaddle-gpu', 'numpy', 'pillow', 'torch', 'timm',
            'onnxruntime', 'openvino', 'paddle2onnx')


def cpu_description():
    """(model name, logical cores, the features of :data:`CPU_FEATURES` it has)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    name = value.strip()
                elif key.strip() == 'flags':
                    flags = set(value.split())
                if name and flags:
                    break
    except OSError:
        pass
    return name, os.cpu_count(), [f for f in CPU_FEATURES if f in flags]


def usable_cpus():
    """The logical CPUs this process may run on: its affinity where the system reports it
    (``taskset``, a cpuset), else every CPU of the machine."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not offered on macOS and Windows
        return os.cpu_count() or 1


def machine_id():
    """The CPU a speed measurement holds for: its model, cores and vector features."""
    name, cores, features = cpu_description()
    return f'{name} | {cores} cpus | {" ".join(features)}'


def installed_versions(packages=PACKAGES):
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
