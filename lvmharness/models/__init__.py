"""Model sources: the alias registry and ladder (torch-free), timm/torchvision sources, building."""
