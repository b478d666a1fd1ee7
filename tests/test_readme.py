"""The README's model table is the one derived from the code and the weights registry."""
import os
import re

from paddle_dla.model_table import markdown

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


def test_readme_model_table_is_current():
    text = open(README, encoding='utf-8').read()
    table = re.search(r'<!-- model-table:start -->\n(.*?)\n<!-- model-table:end -->', text, re.S)
    assert table, 'README lost its model-table markers'
    assert table.group(1) == markdown(), 'regenerate with: python -m paddle_dla.model_table'
