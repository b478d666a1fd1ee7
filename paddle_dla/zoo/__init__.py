"""Models by name: ``create_model`` looks the name up in the model registry, builds the
network and loads the weights ``pretrained=`` names, strictly, by the rules of its family
(``classifier``: fitting to other classes or input channels; ``dense``: heads or classes
taken from the file)."""
