"""The web demo (`python -m slr.demo`): recognition in `recognize`, the Gradio page in `app`."""
