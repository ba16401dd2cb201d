"""The agent: model providers, the tools a model may call, and the policy that decides them."""
