"""The pure core: no I/O, no Kafka, no metrics. Records, decoding by input shape, client
identity, risk, policy, rules, the one driver, keyed state and the codec.
"""
