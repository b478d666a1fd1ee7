"""The networks and the tables that define them: one declarative row per classifier
(``variants``) and per dense network (``dense_variants``), the model registry every name is
looked up in (``registry``), the input recipes, the 1000 ImageNet classes, and the Paddle
layers (PyTorch-exact conv/BN, the blocks, ``DLA``, DCNv2, the DLA-Up / IDA-Up necks, the
dense networks). Importing this package loads no Paddle: the tables are plain data."""
