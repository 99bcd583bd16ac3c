"""OpenVINO's Python module is imported before any VapourSynth core exists: vs-mlrt's
OpenVINO plugin (vapoursynth-mlrt-ov), where installed, brings its own build of OpenVINO's
library, which a core loads and the Python module then refuses
(:func:`vidsr.plan.machine.openvino_unusable`)."""

import importlib.util

if importlib.util.find_spec("openvino") is not None:
    import openvino  # noqa: F401
