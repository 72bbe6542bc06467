"""Speed and size of the synthetic sample data (``oxe-augment sample-data``).

For each image size, renders a few episodes (one per robot, two third-person cameras)
and reports milliseconds per rendered camera frame (pybullet's CPU renderer plus the
label-map lookup; wall and CPU time, since the machine may be shared), then writes the same episodes as an RLDS dataset and reports the
end-to-end time per episode and the bytes per episode on disk.

    .venv/bin/python benchmarks/sample_data_speed.py [--sizes 128 256] [--episodes 3] [--steps 16]

Results go to benchmarks/results/sample_data_speed.json.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import tensorflow_datasets as tfds
from measure import write_results

from pipelines import sample_data


def measure_size(size: int, episodes: int, steps: int, cameras: int) -> dict:
    spec = sample_data.SampleSpec(episodes=episodes, steps=steps, size=size, cameras=cameras)
    per_robot_ms = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    for index in range(episodes):
        episode_start = time.perf_counter()
        sample_data.render_sample_episode(spec, index)
        per_robot_ms.setdefault(spec.robot_of_episode(index), []).append(
            1000 * (time.perf_counter() - episode_start) / (steps * cameras)
        )
    render_seconds = time.perf_counter() - start
    render_cpu_seconds = time.process_time() - cpu_start
    frames = episodes * steps * cameras

    with tempfile.TemporaryDirectory() as scratch:
        out = pathlib.Path(scratch) / "1.0.0"
        start = time.perf_counter()
        sample_data.write_sample_dataset(out, episodes=episodes, steps=steps, size=size, cameras=cameras)
        write_seconds = time.perf_counter() - start
        shard_bytes = sum(p.stat().st_size for p in out.glob("*.tfrecord-*"))

    return {
        "size": size,
        "episodes": episodes,
        "steps": steps,
        "cameras": cameras,
        # Includes loading the robot and scene once per episode, spread over its frames.
        "render_ms_per_frame": round(1000 * render_seconds / frames, 2),
        # CPU time of this process: what the wall time would be on an idle core.
        "render_cpu_ms_per_frame": round(1000 * render_cpu_seconds / frames, 2),
        "render_ms_per_frame_by_robot": {r: round(sum(v) / len(v), 2) for r, v in per_robot_ms.items()},
        "write_seconds_per_episode": round(write_seconds / episodes, 3),
        "bytes_per_episode": shard_bytes // episodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--cameras", type=int, default=2)
    args = parser.parse_args()
    tfds.disable_progress_bar()

    runs = []
    for size in args.sizes:
        result = measure_size(size, args.episodes, args.steps, args.cameras)
        print(result)
        runs.append(result)
    path = write_results("sample_data_speed", {"runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
