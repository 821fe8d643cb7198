"""What a measurement runs on: devices, execution options, the machine, env.json, data, traces."""
