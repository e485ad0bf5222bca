# RoboTwin 2.0 policy folder for a GigaWorld-Policy checkpoint: copy this folder to RoboTwin's policy/GigaWorldPolicy/
# (with gigaworld-policy installed in RoboTwin's environment). Settings: deploy_policy.yml.
from gigaworld_policy.serving.robotwin import eval, get_model, reset_model  # noqa: F401, A004 (RoboTwin's names)
