"""ramparts: a layered network-security gateway (firewall policy engine and HTTP gateway)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
