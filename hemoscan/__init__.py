"""hemoscan: find and count hemophagocytes and blood cells in bone-marrow smear images.

A research tool: every automated finding is a suggestion for a pathologist to confirm.
Heavy dependencies (torch, OpenCV) are imported lazily by the modules that need them, so
``import hemoscan`` and ``hemoscan --help`` stay fast.
"""

__version__ = "0.1.0"
