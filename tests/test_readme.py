"""The README's model table is the one derived from the code and the weights registry."""
import os
import re

import paddle
import pytest

import paddle_dla
from paddle_dla.weights.model_table import feature_markdown, markdown

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


@pytest.mark.full  # counts MACs of all 12 variants (13 s); the feature table stays fast
def test_readme_model_table_is_current():
    text = open(README, encoding='utf-8').read()
    table = re.search(r'<!-- model-table:start -->\n(.*?)\n<!-- model-table:end -->', text, re.S)
    assert table, 'README lost its model-table markers'
    assert table.group(1) == markdown(), 'regenerate with: paddle-dla info --markdown'


def test_readme_feature_table_is_current_and_true():
    text = open(README, encoding='utf-8').read()
    table = re.search(r'<!-- feature-table:start -->\n(.*?)\n<!-- feature-table:end -->', text, re.S)
    assert table and table.group(1) == feature_markdown()
    rows = {line.split('|')[1].strip(' `'): [c.strip() for c in line.split('|')[2:7]]
            for line in table.group(1).splitlines()[2:]}
    assert set(rows) == set(paddle_dla.list_models())
    for name in ('dla_34', 'dla_60', 'dla_169'):
        backbone = paddle_dla.create_model(name, features_only=True)
        backbone.eval()
        with paddle.no_grad():
            shapes = ['x'.join(map(str, f.shape[1:])) for f in backbone(paddle.zeros([1, 3, 224, 224]))]
        assert shapes == rows[name]
    assert rows['dla_60'][0] == '32x112x112' and rows['dla_60'][-1] == '1024x7x7'
