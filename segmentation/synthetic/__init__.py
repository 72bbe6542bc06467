"""Synthetic robot episodes with exact masks, rendered on the CPU (pybullet).

``render.py`` simulates and renders a robot arm on a table among a few task objects and
returns frames with exact robot part label maps and per-object label maps. The sample
dataset (``pipelines/sample_data.py``) and the learning tests are built from it.
Importing ``segmentation.synthetic.render`` imports pybullet (it prints a banner).
"""
