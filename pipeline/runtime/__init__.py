"""The streaming runtime: the Faust app and its agents, transport, topics, metrics,
settings, the embedded broker, processes and the demo.
"""
