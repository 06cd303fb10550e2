"""The sim's typed config: every key ``sim.make_env(task, **cfg)`` accepts, with its default."""

from __future__ import annotations

from dataclasses import dataclass

from robot_stack.config import check_choice
from robot_stack.specs import VIEWS
from sim.variants import VARIANTS, check_strength

CAMERAS = ("raycast", "gl")
REWARDS = ("sparse", "shaped")


@dataclass
class SimConfig:
    """Knobs of one simulated task; 0 for a step size or horizon means "the task's default"."""

    robot: str = "Panda"
    camera: str = "raycast"  # "raycast" (mujoco.mj_multiRay, no GL) or "gl" (mujoco.Renderer)
    heightmap_size: int = 64
    # "workspace": the fixed view over the workspace; "gripper": centred on the ee, 1.5x the workspace, gripper drawn
    # in, heights relative to the ee, opening as a 2nd channel (robot_stack.observation). Kept "workspace" by default
    # while the trained results and launch files are on it (issue 19).
    view: str = "workspace"
    camera_resolution: int = 0  # depth image width = height in pixels; 0 -> 1.5 x heightmap_size
    # metres above the table, looking straight down at the workspace centre; the image covers the view's extent
    camera_height: float = 0.5
    control_freq: int = 20  # Hz; one camera frame per control step
    # seconds per MuJoCo substep (robosuite default 0.002): 5 substeps per 20 Hz control step, half the cost of
    # 0.005 with every expert still >= 90% (docs/sim.md); the contacts stay stable (solref 0.02 = 2 substeps)
    physics_timestep: float = 0.01
    horizon: int = 0
    reward: str = "sparse"
    variant: str = "none"
    # in [0, 1]: 0 = symmetric, 1 = the strongest setting (sim/variants.py); None = the variant's default strength
    variant_strength: float | None = None
    # True: each reset turns the gripper by a yaw drawn uniformly from a half turn (the fingers look alike after one),
    # so the gripper drawn in the gripper-centred view shows no world direction; False: every episode starts at yaw 0
    random_start_yaw: bool = False
    depth_noise_std: float = 0.0  # metres, Gaussian, like a real sensor's depth jitter
    depth_dropout: float = 0.0  # fraction of pixels reported as 0 (no return)
    dpos: float = 0.0
    dtheta: float = 0.0
    seed: int | None = None  # None: reset(seed=...) seeds layouts and noise; the scene gets sim.env.UNSEEDED_SCENE_SEED

    def __post_init__(self) -> None:
        check_choice("camera", self.camera, CAMERAS)
        check_choice("view", self.view, VIEWS)
        check_choice("reward", self.reward, REWARDS)
        check_choice("variant", self.variant, VARIANTS)
        check_strength("variant_strength", self.variant_strength)
        if self.control_freq <= 0 or self.physics_timestep <= 0:
            raise ValueError(f"control_freq and physics_timestep must be positive, got {self.control_freq}, "
                             f"{self.physics_timestep}")
        substeps = 1.0 / (self.control_freq * self.physics_timestep)
        if abs(substeps - round(substeps)) > 1e-6 or round(substeps) < 1:
            raise ValueError(f"1 / (control_freq * physics_timestep) must be a whole number of substeps, got "
                             f"{substeps:.3f} (control_freq={self.control_freq}, "
                             f"physics_timestep={self.physics_timestep})")
        if not 0.0 <= self.depth_dropout < 1.0 or self.depth_noise_std < 0.0:
            raise ValueError(f"depth_dropout must be in [0, 1) and depth_noise_std >= 0, got "
                             f"{self.depth_dropout}, {self.depth_noise_std}")
        if self.camera_height <= 0.0:
            raise ValueError(f"camera_height must be positive, got {self.camera_height}")
