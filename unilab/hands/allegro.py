"""Allegro Hand V3 (Wonik Robotics), right hand, from MuJoCo Menagerie ``wonik_allegro``.

The palm faces world +z with the fingers along +x, so the model is used as shipped.
Gains are the reference task's (kp 1.0, kd 0.1); Menagerie's passive joint damping is
replaced by the servo's ``kd`` so that domain randomisation of ``kd`` is the only damping.
"""

from unilab.sim.hand_spec import HandSpec

ALLEGRO = HandSpec(
    name="allegro",
    menagerie_id="wonik_allegro",
    menagerie_entry="right_hand",
    joint_names=(
        "ffj0",
        "ffj1",
        "ffj2",
        "ffj3",
        "mfj0",
        "mfj1",
        "mfj2",
        "mfj3",
        "rfj0",
        "rfj1",
        "rfj2",
        "rfj3",
        "thj0",
        "thj1",
        "thj2",
        "thj3",
    ),  # fmt: skip
    home_pose=(
        0.082,
        1.244,
        0.265,
        0.298,
        0.005,
        1.096,
        0.080,
        0.150,
        0.029,
        1.337,
        0.285,
        0.317,
        1.104,
        1.163,
        0.953,
        -0.138,
    ),  # fmt: skip
    kp=1.0,
    kd=0.1,
    fingertip_bodies=("ff_tip", "mf_tip", "rf_tip", "th_tip"),
    fingertip_friction=(2.0, 0.05, 0.01),
)
