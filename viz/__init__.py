"""The Flask architecture page over lvmharness graph files."""
