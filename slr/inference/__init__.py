"""Inference beyond one clip per file: sliding windows over long videos and live streams."""
