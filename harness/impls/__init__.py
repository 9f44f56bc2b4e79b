"""Built-in implementations: the course's from-scratch cells, torch.nn's modules, and the
padding/packing recipe wrapped around them."""
