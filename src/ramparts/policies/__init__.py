"""Sans-IO decision engines, one file each, plugged into the phase chain."""
