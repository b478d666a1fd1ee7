"""Parameter and multiply-accumulate counts, measured on the model itself."""
import numpy as np
import paddle
import paddle.nn as nn

from .dcn import DCN


def count_params(model, include_buffers=False):
    """Trainable parameters; with ``include_buffers`` the BN running statistics too."""
    if include_buffers:
        return int(sum(np.prod(v.shape) for v in model.state_dict().values()))
    return int(sum(np.prod(p.shape) for p in model.parameters() if not p.stop_gradient))


def count_macs(model, input_size=(1, 3, 224, 224)):
    """Multiply-accumulates of convolutions (deformable and transposed ones too) and linear
    layers for one forward pass, per image. A deformable convolution counts as the
    convolution it computes; its bilinear sampling is not counted."""
    total = [0]

    def conv_hook(layer, inputs, output):
        k = int(np.prod(layer.weight.shape[1:]))  # in/groups * kh * kw
        total[0] += k * int(np.prod(output.shape[1:]))

    def transposed_hook(layer, inputs, output):
        k = int(np.prod(layer.weight.shape[1:]))  # out/groups * kh * kw, per input element
        total[0] += k * int(np.prod(inputs[0].shape[1:]))

    def linear_hook(layer, inputs, output):
        total[0] += int(np.prod(layer.weight.shape)) * int(np.prod(output.shape[1:-1]) or 1)

    handles = []
    for layer in model.sublayers():
        if isinstance(layer, (nn.Conv2D, DCN)):
            handles.append(layer.register_forward_post_hook(conv_hook))
        elif isinstance(layer, nn.Conv2DTranspose):
            handles.append(layer.register_forward_post_hook(transposed_hook))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_post_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros([1] + list(input_size[1:]), dtype='float32'))
    finally:
        for h in handles:
            h.remove()
        model.train() if was_training else model.eval()  # Paddle 2.6: train() takes no flag
    return total[0]
