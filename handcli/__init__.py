"""handcli: video to 4D hand motion (detect -> estimate -> refine -> variance -> render)."""

__version__ = "0.1.0"
