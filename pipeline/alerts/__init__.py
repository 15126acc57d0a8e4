"""What an alert looks like on its way out: the formats (native, OCSF, ECS, CEF) and the
PII controls, pure functions of an alert.
"""
