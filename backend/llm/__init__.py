"""Every model call goes through LiteLLM: router from config/models.yaml, the local provider, cost."""

import os

# Must be set before litellm is imported anywhere, or it fetches its price map from the internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
