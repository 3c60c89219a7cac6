"""Procedural drawing of smear-like cells: the one home of hemoscan's synthetic images.

Two renderers share these primitives (:mod:`.primitives`), because they draw onto different
things:

- :mod:`.absorbance` draws whole synthetic fields in optical density (Beer-Lambert: objects
  add density, overlaps darken); :mod:`.tile` places cells and returns a tile with its ground
  truth. The example tiles (:mod:`hemoscan.examples`) are made with it.
- :mod:`.hosts` paints macrophage-like hosts in RGB and alpha-blends them onto *real* fields,
  where an absorbance model would need the field's own density; the training composer
  (``hemoscan_training.composer``) draws its procedural hosts and inclusions with it.

Everything drawn here is synthetic: figures measured on it must say so. The library never
imports ``hemoscan_training``; the composer imports this package.
"""

from .tile import ExampleCell, render_example_tile

__all__ = ["ExampleCell", "render_example_tile"]
