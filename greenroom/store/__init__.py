"""What greenroom keeps on disk: project folders, history files, snapshots, the journal."""
