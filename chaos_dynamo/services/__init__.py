"""Services under test: the reference services, starting and stopping them, and telling
whose traffic is whose in the lab's logs."""
