"""The model itself, run in Paddle's dynamic graph: what every engine is compared with, and
``--engine eager`` of the commands."""
import paddle


def eager_predictor(model):
    """``model`` as a numpy-in, numpy-out callable without gradients, as a Predictor is
    (a dense model's named outputs as a dict of arrays)."""
    def predict(batch):
        with paddle.no_grad():
            out = model(paddle.to_tensor(batch))
        if isinstance(out, dict):
            return {k: v.numpy() for k, v in out.items()}
        return [o.numpy() for o in out] if isinstance(out, (tuple, list)) else out.numpy()
    return predict
