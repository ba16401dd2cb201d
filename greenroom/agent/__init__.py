"""The agent: chat messages, model providers and the tools a model may call."""
