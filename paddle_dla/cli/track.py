"""``paddle-dla track``: a video or a folder of frames through FairMOT and its tracker, to
MOTChallenge results (and a video with the tracks drawn)."""
import argparse
import contextlib
import os
import time

from ..core.errors import UsageError, printable
from . import common
from .args import float_range, output_file, positive_int
from .predict import add_engine_options

HELP = 'track people through a video or a folder of frames with FairMOT'
DESCRIPTION = ('Run FairMOT over a video (its frames stretched to 1920x1080 as FairMOT\'s '
               'demo does, or kept at their own size with --keep-aspect) or a folder of '
               'frames (.jpg, .jpeg, .png, .tif, in name order), each frame letterboxed and '
               'decoded as FairMOT does, then through its tracker (Kalman filter, embeddings '
               'fused with motion, IoU rounds). Writes MOTChallenge lines '
               '(frame,id,x,y,w,h,score,-1,-1,-1, frames from 1) of the tracks FairMOT '
               'reports, and with --out-video the frames with the tracks drawn. Every '
               'output is written whole once the last frame is tracked, or not at all.')
EPILOG = """\
examples:
  paddle-dla track street.mp4 --weights fairmot_dla34.pth --out tracks.txt
  paddle-dla track MOT16-03/img1 --weights fairmot_dla34.pth --frame-rate 30 \\
      --out MOT16-03.txt --out-video MOT16-03.mp4
  paddle-dla track street.mp4 --exported fairmot/ --out tracks.txt   # an export
"""

MODEL = 'fairmot_dla34'


def video_file(text):
    """An argparse type: an output .mp4 file."""
    if os.path.splitext(text)[1].lower() != '.mp4':
        raise argparse.ArgumentTypeError(f'{text!r}: the annotated video is MPEG-4 (.mp4)')
    return output_file(text)


def configure(p):
    p.add_argument('source', help='a video file, or a folder of frames')
    common.add_model_options(p, positive_int, required=False)
    p.set_defaults(model=None)
    p.add_argument('--exported', metavar='PATH',
                   help='an exported FairMOT (paddle-dla export) instead of --model/--weights '
                        '(default: none)')
    add_engine_options(p)
    p.add_argument('--out', metavar='FILE', type=output_file, required=True,
                   help='the MOTChallenge results file to write (required)')
    p.add_argument('--out-video', metavar='FILE.mp4', type=video_file,
                   help='also write the frames with the tracks drawn (default: none)')
    p.add_argument('--frame-rate', type=positive_int, metavar='N',
                   help='frames per second, which sizes the lost-track buffer (default: the '
                        'video\'s own; 30 for a folder)')
    p.add_argument('--keep-aspect', action='store_true',
                   help='a video: track its frames at their own size instead of FairMOT\'s '
                        '1920x1080 stretch (results are then in the video\'s pixels; '
                        'default: stretched)')
    common.add_input_size(p)
    p.add_argument('--conf-thres', type=float_range(0.0, 1.0, what='a score'), default=0.4,
                   help='detections scoring at or below it are not tracked (default: '
                        '%(default)s, FairMOT\'s)')
    p.add_argument('--track-buffer', type=positive_int, default=30, metavar='FRAMES',
                   help='frames (at 30 fps) a lost track is kept (default: %(default)s)')
    p.add_argument('--no-progress', action='store_true',
                   help='no progress bar (default: a bar on stderr)')


def _check_paths(args):
    source = os.path.abspath(args.source)
    for option, path in (('--out', args.out), ('--out-video', args.out_video)):
        if path and (os.path.abspath(path) == source or (
                os.path.isdir(source) and os.path.dirname(os.path.abspath(path)) == source)):
            raise UsageError(f'{option} {printable(path)} would write into the frames being '
                             f'tracked: choose another place')
    if args.out_video and os.path.abspath(args.out_video) == os.path.abspath(args.out):
        raise UsageError('--out and --out-video name one file')


def runner(args):
    """(spec, run) of the FairMOT network asked for, checked to be a tracker."""
    from .predict_dense import runner as dense_runner
    if not args.exported and not args.model:
        args.model = MODEL
    model_args = argparse.Namespace(
        model=args.model, weights=args.weights, tag=args.tag, exported=args.exported,
        num_classes=args.num_classes, device=args.device, precision=args.precision,
        engine=args.engine, keep_res=False, flip_test=False, save_json=None,
        input_size=args.input_size)
    spec, run = dense_runner(model_args)
    if spec.task != 'tracking':
        what = printable(args.exported) if args.exported else args.model
        raise UsageError(f'{what} is a {spec.task} model; tracking runs FairMOT '
                         f'({MODEL})')
    return spec, run


def run(args):
    from ..core.atomic import atomic_output
    from ..evaluation.runner import progress_bar
    from ..tracking.annotate import draw_tracks, video_writer
    from ..tracking.frames import open_frames
    from ..tracking.motchallenge import result_lines
    from ..tracking.pipeline import DEFAULT_FRAME_RATE, track_frames
    from .predict import announcing_engine
    _check_paths(args)
    frames = open_frames(args.source, keep_aspect=args.keep_aspect)
    frame_rate = args.frame_rate or frames.frame_rate or DEFAULT_FRAME_RATE
    spec, network = runner(args)
    print(f'frames: {len(frames):,} of {frames.size[0]}x{frames.size[1]} from '
          f'{printable(args.source)}, tracked at {frame_rate} fps', flush=True)
    tracked = track_frames(spec, announcing_engine(network), frames, frame_rate,
                           args.track_buffer, args.conf_thres)
    bar = progress_bar(len(frames), 'tracking', enabled=not args.no_progress, unit='frame')
    lines, ids, model_seconds, start = [], set(), 0.0, time.perf_counter()
    with atomic_output(args.out) as results_tmp:
        with (video_writer(args.out_video, frame_rate, frames.size) if args.out_video
              else contextlib.nullcontext()) as write_frame:
            for done, frame in enumerate(tracked, 1):
                lines.append(result_lines(frame.number, frame.tracks))
                ids.update(t.track_id for t in frame.tracks)
                model_seconds += frame.model_seconds
                if write_frame is not None:
                    write_frame(draw_tracks(frame.pixels, frame.tracks, frame.number,
                                            done / (time.perf_counter() - start)))
                if bar is not None:
                    bar.set_postfix_str(f'{len(frame.tracks)} tracks', refresh=False)
                    bar.update(1)
            with open(results_tmp, 'w', encoding='utf-8') as f:
                f.write(''.join(lines))
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - start
    print(f'tracked: {len(frames):,} frames, {len(ids):,} identities, '
          f'{sum(line.count(chr(10)) for line in lines):,} boxes')
    print(f'speed: {len(frames) / wall:.2f} frames/s end to end, '
          f'{len(frames) / model_seconds:.2f} frames/s in the model alone')
    print(f'results: {printable(args.out)}'
          + (f'; video: {printable(args.out_video)}' if args.out_video else ''))
    return 0
