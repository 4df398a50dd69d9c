"""The demo's Gradio page: a clip tab (upload or record, top-5, stage timings, the frames the model
saw) and a live webcam tab (sliding windows over the stream). Built around one loaded model."""

from __future__ import annotations

import logging

import gradio as gr

from slr.inference.predictor import Predictor
from slr.ui.recognize import LiveSession, UploadError, recognize_clip

log = logging.getLogger(__name__)


def header(predictor: Predictor, ckpt_name: str) -> str:
    glosses = predictor.glosses
    shown = ", ".join(glosses[:8]) + (", ..." if len(glosses) > 8 else "")
    return (
        f"# slr: isolated sign recognition\n"
        f"Model `{ckpt_name}`: {len(glosses)} glosses ({shown}); it sees "
        f"{predictor.num_frames} evenly spaced frames of a clip, cropped to "
        f"{predictor.image_size} px, on {predictor.device.type} "
        f"(warm-up {predictor.warmup_seconds:.2f} s). One sign per clip; for long videos use "
        "`python -m slr.predict ... stream=true`."
    )


def timing_text(result: dict, device: str) -> str:
    t = result["timing"]
    total = sum(t.values())
    return (
        f"**{total:.3f} s** for this clip on the {device}: decode {t['decode']:.3f} s, "
        f"backbone {t['backbone']:.3f} s, LSTM+head {t['lstm_head']:.3f} s "
        f"({len(result['frames'])} frames seen)"
    )


def build_app(
    predictor: Predictor,
    ckpt_name: str,
    num_views: int = 1,
    webcam_every: float = 0.1,
    webcam_window: int = 20,
    webcam_stride: int = 5,
) -> gr.Blocks:
    """The page. `classify` (the upload's endpoint, also for gradio_client) takes the video first,
    then frame_start, frame_end, frame_rate, bbox and num_views, and returns the top glosses as a
    Label value, the timing text and the frame strip."""
    device = predictor.device.type
    # unmirrored: Gradio mirrors the frames it sends along with its preview, which would swap
    # the signer's hands against the camera views (WLASL's) the model was trained on
    camera_view = gr.WebcamOptions(mirror=False)

    def classify(video, frame_start, frame_end, frame_rate, bbox, views):
        try:
            result = recognize_clip(
                predictor, video, frame_start, frame_end, frame_rate, bbox, views
            )
        except UploadError as e:
            log.warning("upload refused: %s", e)
            raise gr.Error(str(e), duration=20, print_exception=False) from None
        top = dict(zip(result["glosses"], result["probabilities"], strict=True))
        strip = [(f, f"{i + 1}") for i, f in enumerate(result["frames"])]
        return top, timing_text(result, device), strip

    def live(frame, session):
        if frame is None:
            return gr.skip(), gr.skip(), session
        if session is None:
            session = LiveSession(predictor, webcam_every, webcam_window, webcam_stride)
        result = session.step(frame)
        count = session.recognizer.count
        if result is None:
            return None, f"collecting frames: {count} of {webcam_window}", session
        top = dict(zip(result["glosses"], result["probabilities"], strict=True))
        status = (
            f"window of webcam frames {result['start_frame']}-{result['end_frame']} "
            f"(of {count}); model time {1000 * session.seconds / count:.0f} ms per frame"
        )
        return top, status, session

    # uploads and served images older than an hour are removed every hour: a long-running page
    # does not fill its temporary folder
    blocks = gr.Blocks(title="slr demo", analytics_enabled=False, delete_cache=(3600, 3600))
    with blocks as app:
        gr.Markdown(header(predictor, ckpt_name))
        with gr.Tab("Clip"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(
                        sources=["upload", "webcam"], label="video", format=None,
                        include_audio=True, height=320, webcam_options=camera_view,
                    )  # fmt: skip
                    with gr.Accordion("options", open=False):
                        with gr.Row():
                            frame_start = gr.Number(1, label="frame_start (from 1)", precision=0)
                            frame_end = gr.Number(-1, label="frame_end (-1 = end)", precision=0)
                            frame_rate = gr.Number(25, label="frame_rate the range counts at")
                        bbox = gr.Textbox("", label="bbox x1, y1, x2, y2 (blank: centre square)")
                        views = gr.Slider(1, 10, value=num_views, step=1, label="num_views")
                    button = gr.Button("Recognize again", variant="primary")
                with gr.Column():
                    top = gr.Label(num_top_classes=predictor.topk, label="top glosses")
                    timing = gr.Markdown("Upload or record a clip of one sign.", label="timing")
            strip = gr.Gallery(label="the frames the model saw", columns=10, height="auto")
            inputs = [video, frame_start, frame_end, frame_rate, bbox, views]
            outputs = [top, timing, strip]
            video.upload(classify, inputs, outputs, api_name="classify")
            video.stop_recording(classify, inputs, outputs, api_visibility="private")
            button.click(classify, inputs, outputs, api_visibility="private")
            # a cleared video clears its result: what the page shows always belongs to the video
            video.clear(
                lambda: (None, "Upload or record a clip of one sign.", []), None, outputs,
                api_visibility="private",
            )  # fmt: skip
        with gr.Tab("Webcam (live)"):
            gr.Markdown(
                f"Sign in front of the camera: a window of {webcam_window} frames, one every "
                f"{webcam_every} s, slides by {webcam_stride} frames; the backbone runs once per "
                "frame, the LSTM + head once per window. The view is not mirrored: the model "
                "sees what the camera sees, as in its training videos."
            )
            with gr.Row():
                cam = gr.Image(
                    sources=["webcam"], streaming=True, type="numpy", label="webcam",
                    webcam_options=camera_view,
                )  # fmt: skip
                with gr.Column():
                    live_top = gr.Label(num_top_classes=predictor.topk, label="live top glosses")
                    live_status = gr.Markdown(label="live status")
            session = gr.State(None)
            cam.stream(
                live, [cam, session], [live_top, live_status, session],
                stream_every=webcam_every, api_visibility="private",
            )  # fmt: skip
    return app
