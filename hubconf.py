"""paddle.hub entry points: ``paddle.hub.load(repo_dir, 'dla_34', source='local', pretrained=True)``."""
import paddle_dla as _paddle_dla

dependencies = ['paddle', 'numpy']

globals().update({_name: getattr(_paddle_dla, _name) for _name in _paddle_dla.list_models()})
