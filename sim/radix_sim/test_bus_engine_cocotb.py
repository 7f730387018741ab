"""cocotb test of the bus-master engine: run one memory image's command list (radix_sim.bus_build)."""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from radix_sim.bus_build import JOB_ENV
from radix_sim.bus_tb import BusEngineTB


@cocotb.test()
async def memory_image(dut):
    """Load the image, run the list under latency and pauses, save memory, registers and bus facts."""
    job = json.loads(open(os.environ[JOB_ENV]).read())
    with np.load(job["image"]) as image:
        memory = image["memory"]
    tb = BusEngineTB(dut, seed=job["seed"], memory_size=memory.size * 8, pause=job["pause"],
                     memory_base=job["base"])
    await tb.start()
    tb.write_memory(job["base"], memory)
    registers = await tb.run_list(job["cmd_base"], job["cmd_count"], job["win_base"], job["win_size"],
                                  timeout_cycles=job["timeout_cycles"])
    tb.monitor.check()
    np.savez(job["result"], memory=tb.read_memory(job["base"], memory.size),
             registers=json.dumps(registers), bus=json.dumps(tb.monitor.summary()))
