"""The ``.tcz`` file format (formats/tcz.md): :mod:`tcodec.format.container` packs and
unpacks it with the standard library only."""
