"""The task products around the dense networks: an image read and prepared by a network's
input recipe (``inputs``), its maps decoded into boxes or a class map (``decode``), drawn
(``drawing``), and the whole path for a model or an export (``serving``)."""
