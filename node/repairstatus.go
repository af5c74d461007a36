package node

// withRepairBytes fills in st's repair traffic by role (nil stays nil: a
// node without state).
func (n *Node) withRepairBytes(st *StorageStatus) *StorageStatus {
	if st == nil || n.state == nil {
		return st
	}
	st.RepairBytes.Server, st.RepairBytes.Volunteer = n.state.svc.RepairBytes()
	return st
}
