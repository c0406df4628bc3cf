"""One sync of one workspace: the engine and its phases (read, plan, apply), health, the export."""
