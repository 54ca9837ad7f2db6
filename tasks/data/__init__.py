"""Readers of standard dataset formats (images, boxes, masks, text, series, graphs)."""
